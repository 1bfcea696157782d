"""analyses/layer"""
