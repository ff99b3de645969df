"""What training optimises and with what: the Muon optimizer (`muon`), LoRA adapters (`lora`) and
the DPO loss (`dpo`). Works on any `nn.Module`; imports no architecture.
"""
