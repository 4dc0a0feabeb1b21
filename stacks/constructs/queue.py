"""The provisioning queue: SQS FIFO, one message group per kintone record, with a FIFO dead-letter queue."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from lambdas.domain.settings import MAX_RECEIVE_COUNT

# Lambda's guidance for SQS event sources: visibility at least six times the function timeout.
VISIBILITY_TIMEOUT_FACTOR = 6


class ProvisioningQueue(Construct):
    def __init__(
        self, scope: Construct, construct_id: str, *, worker_timeout: Duration, encryption_key: kms.IKey
    ) -> None:
        super().__init__(scope, construct_id)
        common = {
            "fifo": True,
            # The webhook and reconciler set MessageDeduplicationId themselves (kintone's notification id).
            "content_based_deduplication": False,
            # Per-group deduplication and throughput: a burst of records is spread over many groups.
            "deduplication_scope": sqs.DeduplicationScope.MESSAGE_GROUP,
            "fifo_throughput_limit": sqs.FifoThroughputLimit.PER_MESSAGE_GROUP_ID,
            "encryption": sqs.QueueEncryption.KMS,
            "encryption_master_key": encryption_key,
            "data_key_reuse": Duration.minutes(5),
            "enforce_ssl": True,
        }
        self.dead_letter_queue = sqs.Queue(
            self, "DeadLetterQueue", retention_period=Duration.days(14), **common
        )
        self.queue = sqs.Queue(
            self,
            "Queue",
            visibility_timeout=Duration.seconds(worker_timeout.to_seconds() * VISIBILITY_TIMEOUT_FACTOR),
            retention_period=Duration.days(4),
            dead_letter_queue=sqs.DeadLetterQueue(
                max_receive_count=MAX_RECEIVE_COUNT, queue=self.dead_letter_queue
            ),
            **common,
        )
