"""deleverage.lab"""
