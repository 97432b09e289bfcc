"""Sample: the denoiser and what drives it. The per-frame expression signal (`progression`), the
ONNX model and its card (`runtime`), the noise schedule, the sampler (Algorithm 1 and fast DDIM)
with its label guidance, and the output low-pass over the template (`smoothing`)."""
