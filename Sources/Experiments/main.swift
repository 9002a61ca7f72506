print("fusion: not yet")
