"""hrdeploy model plugin: HRNet-C image classification (the nine official widths)."""
