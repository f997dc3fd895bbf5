"""The security cases (docs/security-cases.md) and the defences behind them."""
