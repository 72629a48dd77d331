"""cvault command-line adapter (click). Thin: parse, call the vault facade, render."""
