"""Where rows come from: file formats and their readers, the data root, downloads, Arrow storage and caches."""
