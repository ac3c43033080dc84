"""The nn.Module classes the methods add to a model, one module per method that has any.

They live here, not beside their method's Config, so that importing `petsweep.methods` (what composing a
config does: every method registers its Config there) imports no torch; a method imports its layers inside
`attach`, where torch is loaded anyway.
"""
