"""Paper artifacts: Tables 1-6 and App. D.5 (:mod:`~ddeqs.paper.tables`), Figures 1, 4, 5, 7-17
(:mod:`~ddeqs.paper.figures`), the App. D.9 rotation flow (:mod:`~ddeqs.paper.flow`) and
``results/README.md`` (:mod:`~ddeqs.paper.report`), all computed from run folders
(:mod:`~ddeqs.paper.runs`) and set side by side with the published values (:mod:`~ddeqs.paper.values`).
"""
