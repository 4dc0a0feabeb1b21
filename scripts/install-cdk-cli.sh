#!/usr/bin/env bash
# Installs Node.js 22 and the AWS CDK CLI, both pinned, into .local/cdk-cli (project-local,
# no root needed, nothing global). Node 22 comes from the npm registry's `node` package because
# Node 20, the system default here, is end-of-life and makes the CDK print banners.
# Idempotent: a second run with the same pins does nothing.
set -euo pipefail

NODE_VERSION=22.23.3
# The newest CLI that reads aws-cdk-lib 2.275's cloud assembly (schema 55 needs >= 2.1148.0).
# aws-cdk 3.0.0 on npm is deprecated and reads schema 43 at most: it rejects this app.
CDK_CLI_VERSION=2.1148.1

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
prefix="$root/.local/cdk-cli"
stamp="$prefix/.installed-node-$NODE_VERSION-cdk-$CDK_CLI_VERSION"

if [[ -f "$stamp" ]]; then
  exit 0
fi

if ! command -v npm >/dev/null 2>&1; then
  # npm fetches Node 22 itself; any npm will do for that, Debian's included.
  apt-get update -q && apt-get install -y -q nodejs npm
fi

mkdir -p "$prefix"
npm install --prefix "$prefix" --no-audit --no-fund --no-save --loglevel=error \
  "node@$NODE_VERSION" "aws-cdk@$CDK_CLI_VERSION"
rm -f "$prefix"/.installed-*
touch "$stamp"
"$prefix/node_modules/.bin/node" --version
PATH="$prefix/node_modules/.bin:$PATH" "$prefix/node_modules/.bin/cdk" --version
