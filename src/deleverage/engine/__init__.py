"""deleverage.engine"""
