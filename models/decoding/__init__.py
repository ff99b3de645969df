"""How an architecture continues a sequence: the KV cache (`kv_cache`), the decoders each arch
declares and the one decode loop every generation path runs (`decoders`), sampling (`sampling`) and every
arch's `generate` (`generation`). Below `architectures`, which import it.
"""
