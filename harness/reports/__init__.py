"""Reports over stored runs: data first (rows, frames), rendered by the CLI or templates."""
