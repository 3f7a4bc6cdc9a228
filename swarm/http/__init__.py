"""The HTTP side: the API app, its problem answers, the event stream, the A2A agent card
and the dashboard.
"""
