# Issue 17's sweep on the TTS + real mix (CORPUS=.device/mix VARIANTS=scripts/gpu/variants/istft.sh):
# decoder, phase-sensitive loss and codebook kind, one change at a time, plus a bundle-size
# inverse-STFT codec. Pack the corpus first: scripts/gpu/pack_corpus.py corpora/mix .device/mix
C="model.loss.complex_stft_weight=10"
sweep conv model.decoder=conv
sweep istft model.decoder=istft
sweep istft_complex model.decoder=istft $C
sweep istft_complex_fact model.decoder=istft $C model.quantizer=factorized
bundle bundle_istft model.decoder=istft $C model.istft.dim=384 model.istft.layers=8
