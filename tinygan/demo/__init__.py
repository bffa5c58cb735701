"""The offline demo world: everything the pipeline needs from the outside world, made locally in seconds.

Only the demo stage (stages/demo.py) and the tests import this package; the core (tinygan/*.py) never does.
The pipeline meets the demo world through data alone: an ImageNet-layout tree, a teacher SavedModel that
describes itself (``tinygan.teacher.describe``) and a judge TorchScript file that names itself
(``tinygan.extractors``). Modules (this file imports none of them, so ``classes`` stays cheap):

* ``classes``  the 8 demo classes (real wnids and indices) and the kinds of bad files; no TensorFlow.
* ``canvas``   the renderer's drawing kit: latent-affine scene parameters, shapes, the canvas (TensorFlow).
* ``scenes``   the pictures of the 8 classes (and a generic blob for any other class).
* ``render``   ``render(z, y_onehot, truncation, height, width)``: per-sample deterministic TF rendering.
* ``teacher``  ``save_teacher(path)``: the renderer as a SavedModel with BigGAN-deep-128's Hub interface.
* ``tree``     ``make_tree(root, ...)``: the "real" ImageNet-layout train tree, bad files included.
* ``world``    ``build(root, ...)``: tree + teacher + ``preview.png``.
* ``judge``    the demo judge: a small CNN with Inception's call interface, trained on the tree's images.
* ``cifar``    the CIFAR-10-shaped world (kind ``cifar10``): a 32², 10-class, z-512 StyleGAN-style TorchScript
               teacher, its 32² folders tree and preview (torch only; profile demo-c10).
"""
