"""deleverage.data"""
