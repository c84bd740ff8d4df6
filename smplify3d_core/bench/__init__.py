"""``smplify3d bench``: the runs (:mod:`.runs`, :mod:`.perturb`), the printed report and figure
(:mod:`.report`), the learned front-ends' latency (:mod:`.perception`) and the command (:mod:`.command`)."""
