# The part of tqdm e3-typed-store uses: a byte-counting bar driven by hand.
from tqdm.std import tqdm as tqdm
