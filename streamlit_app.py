"""The app's entry point: the navigation over `pages/` (the home page labelled "Home"), and the home page itself:
what the paper found, one residual block, and the way in.

Imports no torch (directly or through explorer), so it loads in well under a second.
"""
import streamlit as st

from explorer.architecture.charts import residual_block_figure
from explorer.setup import APP_NAME, PAPER_URL, setup_page

PAGES = [
    ("pages/1_Architecture.py", "Architecture", ":material/account_tree:",
     "Build any net of the paper, or your own; see its layers, shapes, costs and the paper's numbers."),
    ("pages/2_Compare.py", "Compare", ":material/compare_arrows:",
     "Put a plain net beside its residual twin; see what shortcuts and depth cost."),
    ("pages/3_Train.py", "Train", ":material/model_training:",
     "Train a plain net and its residual twin at once and watch the degradation problem appear, live."),
    ("pages/4_Runs.py", "Runs", ":material/history:",
     "Every training run: final errors beside the paper's, curves overlaid, metrics and checkpoints to download."),
    ("pages/5_Classify.py", "Classify", ":material/image_search:",
     "Ask two networks about your image and see which pixels their answers rest on."),
    ("pages/6_Inside.py", "Inside", ":material/biotech:",
     "Layer responses (Fig. 7), gradients through depth, and where a model goes wrong."),
    ("pages/7_Experiments.py", "Experiments", ":material/science:",
     "Why residual nets work: delete blocks, walk the loss landscape, watch gradients shatter — plain against "
     "residual."),
    ("pages/8_Class.py", "Class", ":material/groups:",
     "The whole room's runs pooled into Fig. 6, live; the teacher hands out the cells."),
    ("pages/9_Pixels.py", "Pixels", ":material/grid_on:",
     "Segment or detect the objects of your photo with torchvision's ResNet-backed models, beside the paper's "
     "Tables 7 and 8."),
]

def home() -> None:
    """The home page: a function, so this file stays the app's one entry point and router."""
    setup_page(APP_NAME)
    st.title(f":material/stacks: {APP_NAME}")
    st.caption(f"Build and explore the networks of He, Zhang, Ren & Sun, [*Deep Residual Learning for Image "
               f"Recognition*]({PAPER_URL}) (CVPR 2016).")

    text, picture = st.columns([3, 2], gap="large")
    with text:
        st.subheader("The degradation problem")
        st.markdown(
            "Stacking more layers should never hurt: a deeper net could copy a shallower one and set the extra layers "
            "to the identity. Yet in practice a 56-layer plain net has **higher training error** than a 20-layer one "
            "on CIFAR-10, and plain-34 is worse than plain-18 on ImageNet. This is not overfitting; the solver "
            "simply fails to find the better solution (Fig. 1, Fig. 4)."
        )
        st.subheader("Residual learning: F(x) + x")
        st.markdown(
            "Instead of asking a few layers to fit a mapping H(x), let them fit the **residual** F(x) = H(x) − x and "
            "add x back through a **shortcut connection**. If the identity is what is needed, the layers only have to "
            "push F towards zero. Identity shortcuts cost no parameters and almost no computation: one addition per "
            "value (§3.1)."
        )
        st.subheader("What it achieved")
        st.markdown(
            "- With shortcuts the degradation reverses: ResNet-34 beats ResNet-18 "
            "(25.03% vs 27.88% top-1 error on ImageNet, Table 2), while plain-34 loses to plain-18.\n"
            "- ResNet-152 reaches 4.49% top-5 error as a single model (Table 4); an ensemble won ILSVRC 2015 "
            "classification with 3.57% (Table 5).\n"
            "- On CIFAR-10, ResNet-110 reaches 6.43% error with 1.7 M parameters, and even a 1202-layer net "
            "trains without difficulty (7.93%, Table 6)."
        )
    with picture:
        st.plotly_chart(residual_block_figure(), key="home_block",
                        config={"displayModeBar": False, "staticPlot": True})
        st.caption("A building block (Fig. 2): two weight layers learn F(x); the shortcut carries x around them and "
                   "the block outputs relu(F(x) + x).")

    st.divider()
    st.subheader("Explore")
    per_row = 4  # seven or more cards in one row cut their page names short
    for row in range(0, len(PAGES), per_row):
        for column, (page, label, icon, blurb) in zip(st.columns(per_row), PAGES[row:row + per_row]):
            with column.container(border=True, height="stretch"):
                st.page_link(page, label=label, icon=icon)
                st.caption(blurb)


# Without st.navigation Streamlit labels this file's page with its name ("streamlit app"). Each page keeps the
# URL its file name gives it (/Architecture, /Train, …), and a page added to PAGES appears in the sidebar.
navigation = st.navigation([st.Page(home, title="Home", icon=":material/home:", default=True)]
                           + [st.Page(page, title=label, icon=icon) for page, label, icon, _ in PAGES])
navigation.run()
