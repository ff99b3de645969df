"""`torchrun --nproc_per_node N -m tasks.train --config train.json --tokens tokens.json --out DIR`."""

from tasks.train.train import main

main()
