"""deleverage.report"""
