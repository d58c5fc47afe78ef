"""deleverage.core"""
