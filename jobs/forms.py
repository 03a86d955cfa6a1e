from django import forms

from .models import Execution, Job


class HistoryFilterForm(forms.Form):
    company = forms.ModelChoiceField(queryset=None, required=False, empty_label="All companies")
    job = forms.ModelChoiceField(queryset=None, required=False, empty_label="All jobs")
    user = forms.CharField(required=False, max_length=150, label="User")
    outcome = forms.ChoiceField(required=False)

    def __init__(self, *args, companies, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["company"].queryset = companies
        self.fields["job"].queryset = Job.objects.filter(company__in=companies).select_related("company")
        self.fields["job"].label_from_instance = lambda j: f"{j.name} ({j.company.handle})"
        self.fields["outcome"].choices = [("", "All outcomes"), *Execution.Outcome.choices]

    def filter(self, executions):
        data = self.cleaned_data
        if data.get("company"):
            executions = executions.filter(company=data["company"])
        if data.get("job"):
            executions = executions.filter(job=data["job"])
        if data.get("user"):
            executions = executions.filter(username=data["user"].strip())
        if data.get("outcome"):
            executions = executions.filter(outcome=data["outcome"])
        return executions
