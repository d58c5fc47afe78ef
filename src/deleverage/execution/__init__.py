"""deleverage.execution"""
