"""What the model predicts: labels, tags and spans, cleaned and checked."""
