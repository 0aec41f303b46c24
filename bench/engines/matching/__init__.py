"""Matching accuracy: matchers on ground-truth correspondence (Sintel flow, HCI disparity, demo pairs), scored as
the fraction of pixels within 0..7 px, and pictures of the matches."""
