from django import forms

from .models import Comment


class CommentForm(forms.ModelForm):
    class Meta:
        model = Comment
        fields = ["author", "email", "body"]
        labels = {"author": "Name", "body": "Comment"}
