"""The baselines of Potamias et al. §4 and §5.2 that the diffusion model has to beat.

`hierarchy` builds the down-sampling levels of the template, `lstm_decoder` the LSTM encoder with
the spiral mesh decoder, `pca_blendshapes` the PCA blendshape decoder driven by that LSTM's latent,
`training` trains both and writes checkpoints reproducible from a seed.
"""
