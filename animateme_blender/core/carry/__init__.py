"""Carry: each generated template frame moved onto the user's own vertices. The binding along the
template's triangles (`transfer`), the moving-least-squares carry (`smooth_carry`), each lip's
and eyelid's side (`lips`), the jaw, teeth and eyeballs (`jaw`), and `unfold` for folded corners."""
