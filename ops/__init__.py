"""Tools the platform team runs by hand: `python -m ops.kintone_app` sets up the kintone app."""
