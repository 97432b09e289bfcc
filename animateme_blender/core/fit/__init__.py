"""Fit: the template registered to the user's mesh (`registration.fit_template`) and its steps:
the mesh as the fit sees it (`surface`), the rigid search (`pose`), landmarks, the face model's
shapes (`model_fit`), `refine`, all run for one call by `fitter`; the judge that refuses a doubtful
fit, the fit's result and cache key (`fitresult`), its report in words and the fit's options
(landmarks, region, force)."""
