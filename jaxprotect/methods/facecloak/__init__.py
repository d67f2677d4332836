"""FaceCloak (zacharyyahn/FaceCloak): a personal cloak learnt once from one photo, applied to every photo."""
