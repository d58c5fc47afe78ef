"""deleverage.safeguards"""
