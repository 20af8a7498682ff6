"""Pure tensor code for both stages: cameras, Gaussians, splat and mesh renderers, mesh extraction,
UV atlas, texture bake and export. No models, no wire, no bpy."""
