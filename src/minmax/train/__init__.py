"""The training loop and what it needs: state, EMA, checkpoints, logs."""
