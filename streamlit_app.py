"""Home page of ResNet Explorer."""
import streamlit as st

st.set_page_config(page_title="ResNet Explorer", page_icon="🧱", layout="wide")
st.title("ResNet Explorer")
st.write("Build, train and explain the networks of *Deep Residual Learning for Image Recognition* (He et al., 2015).")
