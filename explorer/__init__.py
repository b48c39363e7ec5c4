"""The Streamlit side of ResNet Explorer: page set-up, widgets, cached summaries and pure figure builders."""
