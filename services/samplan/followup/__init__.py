"""Follow-up (issue 16): the seven questions, the indicators as FHIR Measures, and a picture.

Regions follow the reform with indicators and with SKR's seven questions. This
package holds what they mean, with no SQL and no HTTP:

* ``codes``: every URL, code and id the regions' reporting tools rely on;
* ``measures``: the Measure definitions (published at start) and their criteria;
* ``questionnaires``: the seven questions, and the check of an answer against them;
* ``periods``: ``periodStart``/``periodEnd`` and month series;
* ``report``: counts -> a summary MeasureReport;
* ``charts``, ``page``, ``export``: the staff page's SVG, HTML and CSV;
* ``install``: registering all of it with the FHIR layer at start.

The counting itself is SQL in ``samplan.store.indicators``; who may count whose
patients is decided in ``samplan.security.indicators``. See docs/indicators.md.
"""
