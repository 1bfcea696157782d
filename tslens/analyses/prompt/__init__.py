"""analyses/prompt"""
