"""Figures of the Distributed DPO Lab: one module per figure, each with `prepare(lab)` (runs or
reads from the cache what it needs) and `draw(inputs, out_dir)` (PDF + PNG); `paper_figures.cli`
draws them all (`theory-lab figures --out DIR`)."""
