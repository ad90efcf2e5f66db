"""Gradient-flow demos: each is a ``tinyres demo`` sub-command that writes a figure, a table
and a JSON file.

- ``vanishing``: gradient norms at every block's input at initialisation, plain vs residual.
- ``jacobian``: singular values of one block's input-output Jacobian, plain vs residual.
- ``degradation``: plain and residual CIFAR-family nets trained on the digits data.
- ``lesion``: test accuracy after deleting single blocks of the trained nets.

Each module keeps measuring apart from presenting: ``results(...)`` measures and returns
plain data (what the JSON file holds; ``vanishing``'s are ``Measurement`` records),
``table``, ``sentence`` and ``figure`` make the words and the picture from that data
alone, and ``run(args)`` composes them for the command line.
"""
