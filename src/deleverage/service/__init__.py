"""deleverage.service"""
