"""deleverage.venues"""
