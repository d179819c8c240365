"""Models: the vision encoders, the ViT3D extractor, the UnCLIP decoder and the fMRI-LLM."""


def quiet_libraries() -> None:
    """Silence transformers' and diffusers' loading bars and info logs (users see our messages instead).

    Errors still surface; warnings that matter to us are turned into our own messages where needed.
    """
    import diffusers
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    diffusers.utils.logging.set_verbosity_error()
    diffusers.utils.logging.disable_progress_bar()
