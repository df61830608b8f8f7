"""What a stack keeps on the controller and out of git, under ``.lgcloud/<stack>/``: its SSH
key pair, its passwords, which site serves each municipality, and the locks that guard them."""
