"""Pictures and explorers: the only subpackage that imports matplotlib, ipywidgets.

- grids: image grids and loss curves.
- conv_figures: sliding-window frames and animations, receptive fields (chapter 1).
- interp_figures: interpolation kernels, weights and resized images (chapter 2).
- widgets: ConvExplorer and InterpolationExplorer, built on ipywidgets.
"""
