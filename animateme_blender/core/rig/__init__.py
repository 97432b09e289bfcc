"""Rig: the 52 ARKit shapes personalised to the fitted face (`arkit`), the rig built on the user's
mesh and a performance as its weight curves (`build`, solved by `rig_weights`), and the headless
rig output as one .glb file (`gltf`)."""
