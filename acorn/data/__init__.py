"""The images and boxes themselves: tiles cut from frames, near-copy frames, box formats, DagsHub files."""
