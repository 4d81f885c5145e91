"""What the model reads: text, audio, image and graph encoders, vocabularies, subwords, word pieces, vectors."""
