# The second sweep: waveform L1 weight (VARIANTS=scripts/gpu/variants/waveform.sh).
sweep w0
sweep w30 model.loss.waveform_weight=30
sweep w100 model.loss.waveform_weight=100
bundle bundle_w50 model.loss.waveform_weight=50
