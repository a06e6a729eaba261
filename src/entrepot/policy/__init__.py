"""Policy: may this key send this request to that model?"""
