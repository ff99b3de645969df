"""The device a model runs on: the device and dtype rules every stage and pyfunc share (`devices`) and
accelerators' peak FLOP/s for the MFU estimate (`flops`).
"""
