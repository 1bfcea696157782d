"""analyses/head"""
