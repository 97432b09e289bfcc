"""AnimateMe training side: corpus, denoiser, training, export, evaluation and baselines (torch)."""
